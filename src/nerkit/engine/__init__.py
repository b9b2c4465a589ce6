"""Running a model: one Predictor, whatever runs the network (torch or onnxruntime)."""
