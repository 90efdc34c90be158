"""A third-party method package, installed with pip by the registry tests."""

from toy_method import TOY_PRESETS, ToyAutoencoder, ToyConfig

from adbench.registry import MethodSpec


class PluginAutoencoder(ToyAutoencoder):
    """The toy autoencoder under a plugin's own name."""

    config: ToyConfig


SPEC = MethodSpec("toy_plugin", PluginAutoencoder, ToyConfig, TOY_PRESETS, paper="test plugin")
