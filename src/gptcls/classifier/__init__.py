"""The classifier: backbone + pooling + head, run directories, the Classifier predictor."""
