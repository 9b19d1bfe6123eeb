"""The web tool: label Ondřejov spectra and vet candidates, multi-user, keyboard-driven.

`spectraldl.web.app.create_app` builds the FastAPI application;
`spectraldl.web.db.open_database` opens (and migrates) its database;
`spectraldl.web.importing` fills it with spectra and predictions;
`spectraldl.web.store` holds the labelling and vetting logic that the pages,
the JSON API and scripts share.
"""
