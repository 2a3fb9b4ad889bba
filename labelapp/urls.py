"""Rater and staff page URLs."""

from django.urls import path

from labelapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("guidelines/", views.guidelines, name="guidelines"),
    path("rate/", views.rate_next, name="rate_next"),
    path("rate/<int:assignment_id>/", views.rate, name="rate"),
    path("rate/<int:assignment_id>/skip/", views.rate_skip, name="rate_skip"),
]
