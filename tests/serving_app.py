"""A stand-in WSGI app for tests/test_serving.py: answers which process served the request."""
import os


def app(environ, start_response):
    body = f"pid={os.getpid()} length={len(environ.get('QUERY_STRING', ''))}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
