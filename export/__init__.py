"""Export tooling (imports as `mtmm_keras.export`): SavedModel, TFLite and ONNX writers with verification."""
