"""Export tooling (imports as `mtmm_keras.export`): SavedModel, TFLite and ONNX writers, each artifact
verified against the Keras model in its own runtime before the export counts as done."""

from mtmm_keras.export.api import export_model, export_towers
from mtmm_keras.export.planning import FORMATS
from mtmm_keras.export.report import ArtifactReport, ExportReport, ExportVerificationError, OutputCheck
from mtmm_keras.export.tflite_writer import QUANTIZATIONS, FlexOpsError

__all__ = [
    "FORMATS",
    "QUANTIZATIONS",
    "ArtifactReport",
    "ExportReport",
    "ExportVerificationError",
    "FlexOpsError",
    "OutputCheck",
    "export_model",
    "export_towers",
]
