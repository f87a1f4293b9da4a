"""The torch-free predictor: ONNX Runtime, numpy and Pillow only.

    >>> import artstyle
    >>> clf = artstyle.load()                # the shipped model, or load("model.onnx")
    >>> clf.predict("photo.jpg").label
    'human'
"""

from .predictor import Classifier, Prediction, load
from .video import FramePrediction, VideoPrediction

__all__ = ["Classifier", "FramePrediction", "Prediction", "VideoPrediction", "load"]
