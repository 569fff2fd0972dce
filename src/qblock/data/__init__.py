"""The data: the app's folder (pages and groups files), YOLO labels, the exported folder and
its manifest, the problems found in them, pictures of pages."""
