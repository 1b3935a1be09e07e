"""Register the typed schema with Hydra's ConfigStore (the YAML tree extends it)."""

from hydra.core.config_store import ConfigStore

from popsim.config.schema import PopsimConfig

CONFIG_MODULE = "popsim.configs"
CONFIG_NAME = "popsim"


def register() -> None:
    """Store PopsimConfig as 'popsim_schema' (idempotent)."""
    ConfigStore.instance().store(name="popsim_schema", node=PopsimConfig)
