"""Renders the two text fixtures in assets/eval/ (document-invoice.png,
screenshot-editor.png) with Pillow and the DejaVu fonts (Debian fonts-dejavu-core).
Made for imgtag, CC0-1.0. Run once: python3 tools/make_text_fixtures.py (from assets/eval/)."""
from PIL import Image, ImageDraw, ImageFont
sans = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
bold = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
mono = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
# A scanned-looking invoice page, portrait.
img = Image.new("RGB", (600, 800), (250, 250, 246))
d = ImageDraw.Draw(img)
d.text((60, 60), "INVOICE 2024-11", font=ImageFont.truetype(bold, 34), fill=(20, 20, 20))
f = ImageFont.truetype(sans, 18)
lines = ["Imgtag Supplies Ltd, 12 Harbour Road", "Billed to: Example Gallery",
         "Date: 14 November 2024", "",
         "Item                               Amount",
         "Photo tagging, 1,200 images      36.00",
         "Storage review, 3 buckets          12.00",
         "Support, 2 hours                   90.00", "",
         "Total due                          138.00", "",
         "Payment within 30 days.", "Thank you for your business."]
y = 140
for line in lines:
    if line:
        d.text((60, y), line, font=f, fill=(30, 30, 30))
    y += 40
img.save("document-invoice.png", optimize=True)

# A screenshot of an editor window, landscape 16:10.
img = Image.new("RGB", (800, 500), (255, 255, 255))
d = ImageDraw.Draw(img)
d.rectangle((0, 0, 800, 32), fill=(225, 225, 228))
d.text((12, 7), "src/detection/text.rs - imgtag", font=ImageFont.truetype(sans, 15), fill=(40, 40, 40))
f = ImageFont.truetype(mono, 16)
code = ["//! Text in images: where it is, and how much.",
        "", "pub struct TextDetector {", "    engine: Engine,", "}", "",
        "impl TextDetector {", "    /// Finds the lines of text in one image.",
        "    pub fn detect(&self, img: &RgbImage) -> Vec<TextBox> {",
        "        let map = self.probability_map(img);", "        boxes(&map, THRESHOLD)",
        "    }", "}"]
y = 48
for i, line in enumerate(code):
    d.text((10, y), f"{i+1:>3}", font=f, fill=(150, 150, 150))
    d.text((60, y), line, font=f, fill=(20, 20, 120) if line.startswith(("pub", "impl")) else (30, 30, 30))
    y += 33
img.save("screenshot-editor.png", optimize=True)
