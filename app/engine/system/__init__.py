"""The installation: settings, the data folder, the PIN, logging, file hardening and daily
maintenance (integrity checks, backups, health).
"""
