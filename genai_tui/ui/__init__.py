"""The Textual dashboard. Nothing outside this package imports Textual."""
