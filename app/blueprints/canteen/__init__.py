"""The wheel canteen (云享车轮食堂) API."""
