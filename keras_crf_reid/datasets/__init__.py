"""Readers for PRID-2011, iLIDS-VID, MARS and any PRID-layout folder, plus synthetic data."""
