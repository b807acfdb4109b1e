"""Analytical latency / energy / area model of an EdgeBERT-style edge NLP accelerator.

See ``hwmodels/MODEL.md`` for the equations and assumptions; every constant lives in
``hwmodels/data/*.yaml`` with its source.
"""

from hwmodels.config import DVFS_LAYER1_POLICIES, WEIGHT_STORES, CompressionProfile, HardwareConfig
from hwmodels.design import DesignBatch
from hwmodels.dvfs import ExitPredictor, fit_exit_predictor, frequency_mhz, voltage_frequency_points
from hwmodels.envm import ENVM_CELLS, EnvmCell, envm_cell
from hwmodels.evaluate import (BatchResult, HardwareResult, evaluate_configs, evaluate_hardware,
                               evaluate_hardware_batch)
from hwmodels.export import accelerator_parameter_file, adaptivfloat_bias, design_from_parameter_file
from hwmodels.storage import SPARSE_FORMATS, expected_storage_bits, matrix_storage_bits
from hwmodels.traces import exit_layers_from_entropies, load_entropy_trace
from hwmodels.workload import ModelShape

__all__ = [
    "BatchResult",
    "DVFS_LAYER1_POLICIES",
    "SPARSE_FORMATS",
    "WEIGHT_STORES",
    "CompressionProfile",
    "DesignBatch",
    "ENVM_CELLS",
    "EnvmCell",
    "ExitPredictor",
    "HardwareConfig",
    "HardwareResult",
    "ModelShape",
    "accelerator_parameter_file",
    "adaptivfloat_bias",
    "design_from_parameter_file",
    "envm_cell",
    "evaluate_configs",
    "evaluate_hardware",
    "evaluate_hardware_batch",
    "exit_layers_from_entropies",
    "expected_storage_bits",
    "fit_exit_predictor",
    "frequency_mhz",
    "load_entropy_trace",
    "matrix_storage_bits",
    "voltage_frequency_points",
]
