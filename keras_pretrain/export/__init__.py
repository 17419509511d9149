"""Export for serving: verified, atomic SavedModels in TF Serving layout."""

from keras_pretrain.export.saved_model import ExportError, export_saved_model, next_version

__all__ = ["ExportError", "export_saved_model", "next_version"]
