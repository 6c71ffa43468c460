"""Reading labeled text, splitting it, and turning it into padded batches."""

from stepwise.data.readers import Example, read_examples
from stepwise.data.split import stratified_split

__all__ = ["Example", "read_examples", "stratified_split"]
