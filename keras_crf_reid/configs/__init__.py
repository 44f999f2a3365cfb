"""Config dataclasses without TensorFlow: parsing flags and reading a run's settings need no TF.

Each module holds the settings of one concern, declared with `options.option` (default, help,
choices, lower bound) in a `options.config_class`, so `keras_crf_reid.cli` generates their
flags and every config checks its choices and bounds where it is built:

    experiment.py   ExperimentConfig, the tree one run reads (train, evaluate, precompute_flow);
                    CheckpointEvalConfig: the evaluate command line
    data.py         DataConfig: dataset, folders, identity splits
    model.py        ModelConfig: the CRF network
    pairs.py        PairConfig: training batches, sampling, augmentation
    train.py        TrainConfig, FusionConfig, and the trainer's fixed policy numbers
    tta.py          TTAConfig: test-time augmentation views
    evaluation.py   EvalConfig: test protocol, baseline kinds, report figures; the baseline
                    and re-ranking evaluation command lines (BaselineConfig, RerankEvalConfig)
    run.py          RunConfig: names, outputs, ablation rows, processes
    export.py       ExportConfig: the export command line
    server.py       ServerLimits, ServerConfig: the development server's command line
    search.py       SearchConfig: gallery search
    client.py       ClientConfig: the gRPC client's command line
    synthetic.py    SyntheticConfig: a generated synthetic dataset
    tracker.py      TrackerConfig: the tracker's association (track, find_person);
                    TrackingEvalConfig, CropConfig: the MOT15 benchmark and query cropper

The modules that act on them (model, trainer, pipelines, evaluation, runner) import them from
here.
"""
