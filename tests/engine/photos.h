/* photos: real photographs for the engine's tests and benchmarks, gathered
 * at run time from Debian packages (scripts/deps.sh installs them:
 * gnome-backgrounds, mate-backgrounds, ukui-wallpapers; the fixture photos
 * too), scaled down with libvips to a working size, plus variants with known
 * answers. Never committed. */
#ifndef PERCEPT_TEST_PHOTOS_H
#define PERCEPT_TEST_PHOTOS_H

typedef struct photo_set {
    char *dir;          /* working directory holding the files */
    char **paths;       /* base photos (JPEG, longest side <= max_side) */
    int n;
} photo_set;

/* Gathers up to max distinct photos (0: all found; a picture already taken
 * from another file, such as one wallpaper at several resolutions, is passed
 * over: 32x32 grey thumbnails whose mean absolute difference is below 6/255),
 * each scaled to
 * max_side and written as JPEG q=92 into a fresh temporary directory, in
 * path order. Returns the count (< 0 on error, message printed). */
int photos_gather(photo_set *ps, int max, int max_side);
void photos_free(photo_set *ps);

typedef enum {
    PV_REENCODE_Q60,   /* same pixels, JPEG quality 60 */
    PV_REENCODE_PNG,   /* lossless PNG of the JPEG's pixels */
    PV_RESIZE_70,      /* scaled to 70 %, JPEG q=85 */
    PV_CROP_90,        /* central 90 % crop */
    PV_ROT90,          /* rotated 90 degrees */
    PV_FLIP,           /* mirrored */
} photo_variant;

const char *photos_variant_name(photo_variant v);
/* Writes a variant of src to dst (extension decides the format). 0 ok. */
int photos_make_variant(const char *src, const char *dst, photo_variant v);

#endif
