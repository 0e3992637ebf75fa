"""The provider's page area in the privacy centre (the partners page), with
its own templates and catalogue as every page area has."""
