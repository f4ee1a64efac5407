"""Environments and demonstrators. Owns every optional simulator import (minigrid, metaworld)."""
