package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/heraldbus/herald/handlers"
)

// twoColours returns a w x h image, left half red, right half blue.
func twoColours(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{R: 255, A: 255}
			if x >= w/2 {
				c = color.RGBA{B: 255, A: 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// An image job stores a thumbnail, served at /thumbnails/{id}: in the
// upload's format, fitting the size asked for with the aspect ratio kept,
// the left half still red and the right half still blue; the upload is
// deleted once the thumbnail is stored.
func TestImageThumbnail(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		e := start(t, cfg)
		for _, c := range []struct {
			name         string
			data         []byte
			query        string
			contentType  string
			wantW, wantH int
		}{
			{"png", encodePNG(t, twoColours(400, 300)), "?max=100", "image/png", 100, 75},
			{"jpeg", encodeJPEG(t, twoColours(300, 600)), "?max=64", "image/jpeg", 32, 64},
			{"small png, default size, not enlarged", encodePNG(t, twoColours(90, 40)), "", "image/png", 90, 40},
			{"jpeg, default size", encodeJPEG(t, twoColours(512, 128)), "", "image/jpeg", defaultMaxSide, 32},
		} {
			id := e.post("/images"+c.query, "application/octet-stream", c.data)
			thumb := e.waitThumbnail(id)
			got, format, err := image.Decode(bytes.NewReader(thumb))
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			b := got.Bounds()
			if "image/"+format != c.contentType || b.Dx() != c.wantW || b.Dy() != c.wantH {
				t.Errorf("%s: a %dx%d %s thumbnail, want %dx%d %s", c.name, b.Dx(), b.Dy(), format, c.wantW, c.wantH, c.contentType)
				continue
			}
			if !near(got.At(b.Dx()/4, b.Dy()/2), color.RGBA{R: 255, A: 255}) || !near(got.At(3*b.Dx()/4, b.Dy()/2), color.RGBA{B: 255, A: 255}) {
				t.Errorf("%s: colours %v and %v, want red and blue", c.name, got.At(b.Dx()/4, b.Dy()/2), got.At(3*b.Dx()/4, b.Dy()/2))
			}
			code, h, served := e.do(http.MethodGet, "/thumbnails/"+id, "", nil)
			if code != http.StatusOK || h.Get("Content-Type") != c.contentType || !bytes.Equal(served, thumb) {
				t.Errorf("%s: GET /thumbnails/%s: %d %s, %d bytes", c.name, id, code, h.Get("Content-Type"), len(served))
			}
			// The handler deletes the upload after it stores the thumbnail:
			// the job is done once it has.
			e.waitState(id, "done")
			if _, err := e.app.store.Get(context.Background(), uploadName(id)); err == nil {
				t.Errorf("%s: the upload is still stored", c.name)
			}
		}
	})
}

// near reports whether two colours are within 10% of each other (JPEG is
// lossy).
func near(a, b color.Color) bool {
	ar, ag, ab, _ := a.RGBA()
	br, bg, bb, _ := b.RGBA()
	d := func(x, y uint32) bool { return max(x, y)-min(x, y) < 0x1999 }
	return d(ar, br) && d(ag, bg) && d(ab, bb)
}

// waitThumbnail waits until the thumbnail of job id is stored, and returns
// it.
func (e *env) waitThumbnail(id string) []byte {
	e.t.Helper()
	var thumb []byte
	waitFor(e.t, "the thumbnail of "+id, func() bool {
		var err error
		thumb, err = e.app.store.Get(context.Background(), thumbName(id))
		return err == nil
	})
	return thumb
}

// pngHeader returns the start of a PNG file declaring a w x h image: its
// signature and header chunk, and nothing else.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8 bits, RGBA, deflate, no filter, no interlace
	b := []byte("\x89PNG\r\n\x1a\n")
	b = binary.BigEndian.AppendUint32(b, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b = append(b, chunk...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
}

// Uploads that cannot be an image to thumbnail are refused at once, with the
// reason; nothing is stored.
func TestImageBadUploads(t *testing.T) {
	cfg := testConfig()
	cfg.MaxUpload = 64 << 10
	e := start(t, cfg)
	var gifData bytes.Buffer
	if err := gif.Encode(&gifData, twoColours(10, 10), nil); err != nil {
		t.Fatal(err)
	}
	small := encodePNG(t, twoColours(20, 20))
	for _, c := range []struct {
		name, query string
		body        []byte
		code        int
		want        string
	}{
		{"text", "", []byte("hello, world"), http.StatusBadRequest, "the body is not a PNG or JPEG image"},
		{"empty", "", nil, http.StatusBadRequest, "the body is not a PNG or JPEG image"},
		// The test registers the GIF decoder (image/gif); the service does not,
		// and says "not a PNG or JPEG image" then.
		{"gif", "", gifData.Bytes(), http.StatusBadRequest, "the body is a gif image: only PNG and JPEG are accepted"},
		{"a bomb: a small file declaring 100000x100000 pixels", "", pngHeader(100_000, 100_000), http.StatusBadRequest, "100000x100000 pixels: more than"},
		{"a bad header", "", pngHeader(0, 10), http.StatusBadRequest, "unreadable png header"},
		{"too large", "", bytes.Repeat([]byte{0}, 64<<10+1), http.StatusRequestEntityTooLarge, "body larger than 65536 bytes"},
		{"max too small", "?max=8", small, http.StatusBadRequest, "max: want a number of pixels from 16 to 1024"},
		{"max not a number", "?max=big", small, http.StatusBadRequest, `got "big"`},
	} {
		e.expectError(http.MethodPost, "/images"+c.query, "image/png", c.body, c.code, c.want)
	}
	if n := e.app.store.(*memStore).len(); n != 0 {
		t.Errorf("%d blobs stored", n)
	}
	e.expectError(http.MethodGet, "/thumbnails/image-nosuchjob", "", nil, http.StatusNotFound, `no thumbnail "image-nosuchjob" (yet`)
	e.expectError(http.MethodGet, "/thumbnails/email-x", "", nil, http.StatusNotFound, `no thumbnail "email-x"`)
}

// An upload whose header is fine but whose pixels are cut short is accepted,
// and poisoned by the handler at its first attempt (decoding again cannot
// fix it), with the decoder's reason.
func TestImageCorruptPoisoned(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		e := start(t, cfg)
		data := encodePNG(t, twoColours(400, 300))
		id := e.post("/images", "image/png", data[:len(data)/2])
		rec := e.waitPoisoned(thumbHandler, id)
		if rec.Attempts != 1 || !strings.Contains(rec.Error, "decode: ") {
			t.Errorf("poison record: %d attempts, error %q", rec.Attempts, rec.Error)
		}
	})
}

// A redelivered thumbnail job (at least once) finds its thumbnail made and
// only deletes the upload; an upload gone without a thumbnail is permanent.
func TestMakeThumbnailIdempotent(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	e := ThumbnailRequested{Upload: uploadName("image-a"), MaxSide: 32}
	if err := store.Put(ctx, e.Upload, encodePNG(t, twoColours(64, 64))); err != nil {
		t.Fatal(err)
	}
	if format, err := makeThumbnail(ctx, store, "image-a", e); err != nil || format != "png" {
		t.Fatalf("first delivery: %q, %v", format, err)
	}
	thumb, _ := store.Get(ctx, thumbName("image-a"))
	if err := store.Put(ctx, e.Upload, []byte("not read again")); err != nil {
		t.Fatal(err)
	}
	if format, err := makeThumbnail(ctx, store, "image-a", e); err != nil || format != "" {
		t.Fatalf("second delivery: %q, %v", format, err)
	}
	if again, _ := store.Get(ctx, thumbName("image-a")); !bytes.Equal(again, thumb) || store.len() != 1 {
		t.Errorf("the thumbnail changed, or the upload is left (%d blobs)", store.len())
	}
	if _, err := makeThumbnail(ctx, store, "image-b", ThumbnailRequested{Upload: uploadName("image-b"), MaxSide: 32}); !handlers.IsPermanent(err) {
		t.Errorf("an upload gone: %v, want a permanent error", err)
	}
}

// An image may come as a form's file (curl -F image=@photo.png); a form
// without a file, or too large, is refused.
func TestImageFormUpload(t *testing.T) {
	cfg := testConfig()
	cfg.MaxUpload = 64 << 10
	e := start(t, cfg)
	form := func(field, filename string, data []byte) (string, []byte) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		if err := w.WriteField("caption", "a test"); err != nil {
			t.Fatal(err)
		}
		if filename != "" {
			fw, err := w.CreateFormFile(field, filename)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = fw.Write(data)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return w.FormDataContentType(), b.Bytes()
	}
	ct, body := form("image", "photo.png", encodePNG(t, twoColours(200, 100)))
	id := e.post("/images?max=50", ct, body)
	thumb, _, err := image.DecodeConfig(bytes.NewReader(e.waitThumbnail(id)))
	if err != nil || thumb.Width != 50 || thumb.Height != 25 {
		t.Errorf("thumbnail %+v, %v", thumb, err)
	}
	ct, body = form("", "", nil)
	e.expectError(http.MethodPost, "/images", ct, body, http.StatusBadRequest, "the form has no file")
	ct, body = form("image", "big.png", bytes.Repeat([]byte{1}, 64<<10))
	e.expectError(http.MethodPost, "/images", ct, body, http.StatusRequestEntityTooLarge, "body larger than 65536 bytes")
	e.expectError(http.MethodPost, "/images", "multipart/form-data", []byte("x"), http.StatusBadRequest, "reading the form: ")
}
