package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"golang.org/x/image/draw"

	"github.com/heraldbus/herald/bus"
)

// ThumbnailRequested asks for a thumbnail of an uploaded image. Its event ID is
// the job's ID; the image itself waits in the blob store under Upload (an
// event carries a reference, not megabytes: events stay under the bus's and
// the NATS server's size limit).
type ThumbnailRequested struct {
	Upload  string `json:"upload"`   // blob name of the uploaded image
	MaxSide int    `json:"max_side"` // the thumbnail fits in MaxSide x MaxSide
}

// Limits of an image upload and of the thumbnail asked for.
const (
	defaultMaxSide = 128
	minMaxSide     = 16
	maxMaxSide     = 1024
	// maxPixels bounds the decoded size of an upload (width x height), so that
	// a small file declaring a huge image cannot make a handler allocate
	// gigabytes: 40 megapixels, about 160 MB decoded.
	maxPixels = 40_000_000
)

// checkImage reads only the header of an upload: its format (PNG or JPEG)
// and dimensions. A body that is corrupt after its header passes, and is
// poisoned by the handler when it fails to decode.
func checkImage(data []byte) (format string, w, h int, err error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	switch {
	case errors.Is(err, image.ErrFormat):
		return "", 0, 0, errors.New("not a PNG or JPEG image")
	case err != nil:
		return "", 0, 0, fmt.Errorf("unreadable %s header: %w", format, err)
	case format != "png" && format != "jpeg":
		return "", 0, 0, fmt.Errorf("a %s image: only PNG and JPEG are accepted", format)
	case cfg.Width <= 0 || cfg.Height <= 0:
		return "", 0, 0, fmt.Errorf("an empty image (%dx%d)", cfg.Width, cfg.Height)
	case cfg.Width*cfg.Height > maxPixels:
		return "", 0, 0, fmt.Errorf("%dx%d pixels: more than %d", cfg.Width, cfg.Height, maxPixels)
	}
	return format, cfg.Width, cfg.Height, nil
}

// fit returns the size of a w x h image scaled to fit in side x side,
// keeping its aspect ratio, never enlarged, at least 1x1.
func fit(w, h, side int) (int, int) {
	if w <= side && h <= side {
		return w, h
	}
	if w >= h {
		return side, max(1, (h*side+w/2)/w)
	}
	return max(1, (w*side+h/2)/h), side
}

// thumbnail decodes an image and returns its thumbnail, encoded in the
// image's own format (JPEG at quality 85), and that format.
//
// The scaler is draw.CatmullRom. A thumbnail shrinks an image by a large
// factor (a 4000-pixel photo to 128 pixels: 31x), and CatmullRom, being a
// Kernel, widens its support by that factor when it downscales: every source
// pixel contributes to the destination pixel it falls in, weighted by a cubic
// that keeps edges sharp. ApproxBiLinear blends only the 4 source pixels
// nearest to each destination pixel, so at 31x it skips 99% of them and the
// thumbnail aliases (moiré on fine patterns, jagged lines). CatmullRom costs
// more CPU per image; that is fine here, since the work runs in a background
// handler, off the request path, with its own concurrency: the reason it is a
// job at all.
func thumbnail(data []byte, side int) ([]byte, string, error) {
	src, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, "", fmt.Errorf("decode: %w", err)
	}
	b := src.Bounds()
	w, h := fit(b.Dx(), b.Dy(), side)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	var out bytes.Buffer
	switch format {
	case "jpeg":
		err = jpeg.Encode(&out, dst, &jpeg.Options{Quality: 85})
	default:
		format = "png"
		err = png.Encode(&out, dst)
	}
	if err != nil {
		return nil, "", fmt.Errorf("encode: %w", err)
	}
	return out.Bytes(), format, nil
}

// makeThumbnail is the handler of ThumbnailRequested: it makes the thumbnail
// of the job id and stores it under thumbName(id), then deletes the upload.
// It is idempotent: a redelivery after the thumbnail was stored finds it
// and only deletes the upload (the format returned is then ""). An image
// that does not decode is poisoned at once (retrying cannot fix it); a store
// error is retried.
func makeThumbnail(ctx context.Context, store blobStore, id string, e ThumbnailRequested) (string, error) {
	if _, err := store.Get(ctx, thumbName(id)); err == nil {
		return "", store.Delete(ctx, e.Upload)
	} else if !errors.Is(err, errNotFound) {
		return "", err
	}
	data, err := store.Get(ctx, e.Upload)
	if errors.Is(err, errNotFound) {
		return "", bus.Permanent(fmt.Errorf("the upload is gone: %w", err))
	}
	if err != nil {
		return "", err
	}
	thumb, format, err := thumbnail(data, e.MaxSide)
	if err != nil {
		return "", bus.Permanent(err)
	}
	if err := store.Put(ctx, thumbName(id), thumb); err != nil {
		return "", err
	}
	return format, store.Delete(ctx, e.Upload)
}

func uploadName(id string) string { return "uploads/" + id }
func thumbName(id string) string  { return "thumbnails/" + id }
