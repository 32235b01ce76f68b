"""The product's URLs plus the benchmark's comparison views (bench/settings.py only)."""

from django.urls import path

from bench import views
from lithtrix.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    path("bench/bare", views.bare),
    path("bench/drf-plain", views.PlainView.as_view()),
    path("bench/drf-token", views.TokenView.as_view()),
    path("bench/drf-token-throttle", views.TokenThrottledView.as_view()),
    *product_urlpatterns,
]
