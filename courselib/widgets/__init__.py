"""The course's user interfaces: ipywidgets for the labs (the chat window of Lab 01-02, the
memory explorer of Lab 03) and the terminal chat (``python -m courselib chat``).

Each UI lives in its own module and is imported from there (``from courselib.widgets.chat_ui
import ChatUI``), so importing one does not import the others or ipywidgets for the rest.
"""
