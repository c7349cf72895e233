"""The error every settings check raises, at the bottom of the layers so any module may raise it."""


class SettingsError(ValueError):
    """A setting with a bad value. The message is one line that names the setting."""
