"""Screens of the workbench (each a Textual Screen or ModalScreen)."""
