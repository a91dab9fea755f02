"""A Flask app served by gunicorn: its answer shows the dependencies really loaded."""

import importlib.metadata

import flask

app = flask.Flask(__name__)


@app.get("/")
def index():
    return flask.jsonify(
        app="flask",
        message="hello",
        versions={
            name: importlib.metadata.version(name) for name in ("flask", "gunicorn", "werkzeug")
        },
    )
