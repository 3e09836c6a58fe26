"""Local tooling for people: the ``multimodal`` command, emulated training jobs and batch transforms, the
containers, dataset validation and the demo. Built on the SageMaker contract and the classifier."""
