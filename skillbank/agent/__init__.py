"""Layer 3: the procedural-memory agent (learn, act, evaluate), where memory and modules meet."""

from skillbank.agent.config import SETTING_PRESETS, SkillCall, expand_presets
from skillbank.agent.core import (
    CONTROLLER_ARCH,
    SKILL_ARCH,
    VAE_ARCH,
    AgentConfig,
    EpisodeOutcome,
    EvalResult,
    LearnReport,
    ProceduralMemoryAgent,
)
from skillbank.agent.executor import SkillExecutor

__all__ = [
    "CONTROLLER_ARCH",
    "SETTING_PRESETS",
    "SKILL_ARCH",
    "VAE_ARCH",
    "AgentConfig",
    "EpisodeOutcome",
    "EvalResult",
    "LearnReport",
    "ProceduralMemoryAgent",
    "SkillCall",
    "SkillExecutor",
    "expand_presets",
]
