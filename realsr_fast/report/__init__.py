"""The report layer the applications share: self-contained HTML pages (:mod:`.page`), the pictures
in them (:mod:`.pictures`: kernels, noise, zoom regions) and the comparison page of the user's own
files (:mod:`.compare_page`, for `realsr compare` and `realsr upscale --report`)."""
