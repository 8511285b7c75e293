"""ipywidgets UIs for the labs: the chat window (Lab 01-02) and the memory explorer (Lab 03).

Each UI lives in its own module and is imported from there (``from courselib.widgets.chat_ui
import ChatUI``), so importing one does not import the others or ipywidgets for the rest.
"""
