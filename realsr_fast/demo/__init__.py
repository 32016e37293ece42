"""The end-to-end demo job (`realsr demo`) and the HTML report it writes."""
