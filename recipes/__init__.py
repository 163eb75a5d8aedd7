"""The shipped recipes: JSON files, installed with the package as hansard_hf.recipes."""
