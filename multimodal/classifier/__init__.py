"""The classifier: schema, features, labels, image embedding, the AutoGluon members, the fusion network and
the blend, behind ``MultimodalClassifier``. It knows nothing of SageMaker and reads no environment variable:
whoever runs it passes every setting in."""
