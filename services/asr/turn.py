"""Smart Turn v3: is the user's turn complete? An ONNX audio classifier on the last 8 s of the turn."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .features import smart_turn_features


class SmartTurn:
    def __init__(self, path: str, threads: int = 2) -> None:
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

    def probability_from_features(self, features: np.ndarray) -> float:
        """[80, 800] features → probability in [0, 1] that the turn is complete (the model ends in a sigmoid)."""
        (logits,) = self.session.run(None, {"input_features": features[None, :, :].astype(np.float32)})
        return float(np.clip(np.asarray(logits).reshape(-1)[0], 0.0, 1.0))

    def probability(self, audio: np.ndarray) -> float:
        """16 kHz turn audio → completion probability. Blocking; run it off the event loop."""
        return self.probability_from_features(smart_turn_features(audio))
