"""Modal screens: confirmations, help, pickers."""
