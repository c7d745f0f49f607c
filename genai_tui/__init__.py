"""genai-tui: one screen for a self-hosted GenAI image stack on Docker and NVIDIA GPUs."""

__version__ = "0.1.0"
