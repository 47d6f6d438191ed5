"""Non-spiking baselines the spiking network is compared with."""
