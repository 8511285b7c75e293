"""Chat formats: messages, prompt templates and conversations (Lab 01, Lab 02, training).

- :mod:`~courselib.chat.messages`      a chat message (role, content)
- :mod:`~courselib.chat.vicuna`        the Vicuna v1.1 prompt format (course models, WizardVicuna)
- :mod:`~courselib.chat.template`      which template a model uses: its own Jinja or Vicuna
- :mod:`~courselib.chat.conversation`  the turns so far, trimmed to fit a context

Nothing here imports a backend: backends depend on chat, never the other way round.
"""
