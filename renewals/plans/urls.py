"""The backend administrators' pages (no login): opened by a signed link only."""

from django.urls import path

from renewals.plans import views

urlpatterns = [
    path("backend/<str:token>/", views.backend_page, name="plans_backend_page"),
    path("backend/<str:token>/pack/", views.backend_pack, name="plans_backend_pack"),
    path("backend/<str:token>/confirm/", views.backend_confirm, name="plans_backend_confirm"),
]
