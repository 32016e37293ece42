"""`realsr adapt`: fine-tune the official model for one camera from a folder of its photos (docs/adapt.md)."""
