"""The SageMaker container contract: the /opt/ml paths, the channels and their data format, the training job,
the algorithm's specification and the inference server. Built on ``multimodal.classifier``."""
