"""The web app's files (package data): ``index.html``, ``app.js``, ``app.css``, and ``chat.js``, a
symbolic link to the JavaScript SDK in ``clients/js/src/``. Served by :mod:`entrypoints.http.webapp`."""
