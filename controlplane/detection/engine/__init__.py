"""The detectors, without Django: features of a record, an agent's baseline, findings."""

from controlplane.detection.engine.features import Observation, observation_of
from controlplane.detection.engine.profile import RANK, SEVERITIES, AgentProfile, EngineSettings, Finding

__all__ = ["RANK", "SEVERITIES", "AgentProfile", "EngineSettings", "Finding", "Observation", "observation_of"]
