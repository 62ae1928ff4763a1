"""Turn a busy or unreachable database into a plain 503 page instead of a traceback."""

from django.db import OperationalError
from django.http import JsonResponse
from django.shortcuts import render


class DatabaseBusyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError):
            return None
        message = "the database is busy or unreachable; try again in a moment"
        if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            return JsonResponse({"error": message}, status=503)
        return render(request, "webapp/unavailable.html", {"message": message}, status=503)
