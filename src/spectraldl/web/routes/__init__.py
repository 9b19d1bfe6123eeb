"""The web app's routes, one `fastapi.APIRouter` per area: login, labelling, vetting, users."""
