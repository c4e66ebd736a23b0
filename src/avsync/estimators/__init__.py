"""Offset estimators (plugins) and the pure correlation functions they share."""
from .base import Estimate, Estimator, EstimatorOptions, LagProfile, register
from .registry import available_methods, get_estimator

__all__ = ["Estimate", "Estimator", "EstimatorOptions", "LagProfile", "available_methods", "get_estimator",
           "register"]
