"""Shared code of the tunec entry scripts (train.py, merge.py, evaluate.py).

The scripts run inside the Hugging Face training container on SageMaker and, on the local target, under a local
Python with the same /opt/ml layout emulated in the run folder. This package is copied with them: the source
bundle uploaded to SageMaker is the whole stdlib/python folder, and Python puts a script's own folder on sys.path.

Modules:
    failure     one-line failure reasons in /opt/ml/output/failure and exit codes
    jobenv      the SageMaker environment (SM_* variables, channels, resource config, checkpoint folder)
    secrets     a Hub token kept in AWS Secrets Manager, read with the execution role
    config      args.yaml: parsing, type coercion and validation into TunecArgs
    builders    pure translations of TunecArgs into BitsAndBytesConfig, LoraConfig and TrainingArguments
    tokens      pad, end-of-turn and stop tokens
    models      where the model and adapter come from; loading, merging, preparing for inference
    data        the pre-tokenized JSONL splits and the collators
    artifacts   model artifacts handed over between jobs (folders or model.tar.gz)
    checkpoints finding the newest complete checkpoint to resume from
    trainlog    metrics.json of a training run
    scoring     exact_match, rouge_l and multiple-choice accuracy
"""
