"""The engine as the kiosk and the CLI see it: the engine thread, its signals, the start-up
sequence (startup.py), the wiring that builds the parts, the orchestrator that wakes each minute,
the service calls and the client the UI awaits.
"""
