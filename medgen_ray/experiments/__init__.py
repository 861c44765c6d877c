"""Experiments: arms and sweeps of LoRAs on dataset views, compared on Med-VBench."""
