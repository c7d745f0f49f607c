"""Stdlib-only simulators of the GenAI stack services (ComfyUI + ComfyUI-Login, the
orchestrator, model stubs) with failure scenarios, for genai-tui tests and demos.

Run with ``python -m genai_tui.sim --kind comfyui --port 8188 --scenario healthy``; see
:mod:`genai_tui.sim.server` for the scenarios. Nothing here may import third-party code:
the simulator runs in bare ``python:3.11`` containers.
"""
