/* svg.c — metrics curves as a self-contained SVG: one panel per series with
 * axes, ticks, labels, a legend, and exactly one <path> element per series. */
#include "alignctl.h"

#include <math.h>
#include <stdlib.h>

int series_push(series *s, double x, double y)
{
    if (s->n == s->cap) {
        size_t c = s->cap ? s->cap * 2 : 64;
        double *nx = realloc(s->x, c * sizeof *nx);
        if (!nx)
            return -1;
        s->x = nx;
        double *ny = realloc(s->y, c * sizeof *ny);
        if (!ny)
            return -1;
        s->y = ny;
        s->cap = c;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '<')
            fputs("&lt;", f);
        else if (c == '>')
            fputs("&gt;", f);
        else if (c == '&')
            fputs("&amp;", f);
        else if (c == '"')
            fputs("&quot;", f);
        else if (c < 0x20 && c != '\t')
            fputc(' ', f);
        else
            fputc(c, f);
    }
}

static double nice_num(double x, int round_)
{
    double e = floor(log10(x)), f = x / pow(10, e), nf;
    if (round_)
        nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else
        nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10, e);
}

/* Axis range [lo, hi] widened to nice ticks lo + k*step. */
static void nice_axis(double *lo, double *hi, double *step)
{
    if (!(*hi > *lo)) {
        double d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= d;
        *hi += d;
    }
    double range = nice_num(*hi - *lo, 0);
    *step = nice_num(range / 4, 1);
    *lo = floor(*lo / *step) * *step;
    *hi = ceil(*hi / *step) * *step;
}

/* Tick label with as many decimals as the tick step needs; %g only for
 * very large or very small magnitudes. */
static void fmt_tick(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    double mag = fmax(fabs(v), step);
    if (mag >= 1e7 || step < 1e-5) {
        snprintf(buf, cap, "%.3g", v);
        return;
    }
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, cap, "%.*f", dec, v);
}

static const char *const PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

void svg_write(FILE *f, const char *title, const char *xname, const series *S, size_t ns,
               int cols)
{
    const double PW = 440, PH = 250, ML = 70, MR = 20, MT = 34, MB = 46;
    if ((size_t)cols > ns)
        cols = (int)ns;
    if (cols < 1)
        cols = 1;
    size_t rows = (ns + (size_t)cols - 1) / (size_t)cols;
    double W = PW * cols;
    int per_row = (int)(W / 160);
    if (per_row < 1)
        per_row = 1;
    size_t lrows = (ns + (size_t)per_row - 1) / (size_t)per_row;
    double HH = 44 + 20.0 * (double)lrows;
    double H = HH + PH * (double)rows;
    double xlo = INFINITY, xhi = -INFINITY;
    for (size_t s = 0; s < ns; s++)
        for (size_t i = 0; i < S[s].n; i++) {
            if (S[s].x[i] < xlo) xlo = S[s].x[i];
            if (S[s].x[i] > xhi) xhi = S[s].x[i];
        }
    double xstep;
    nice_axis(&xlo, &xhi, &xstep);

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fputs("<title>", f);
    xml_text(f, title);
    fputs("</title>\n", f);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", W, H);
    fputs("<text x=\"16\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", f);
    xml_text(f, title);
    fputs("</text>\n<g class=\"legend\">\n", f);
    for (size_t s = 0; s < ns; s++) {
        double lx = 16 + 160.0 * (double)(s % (size_t)per_row);
        double ly = 36 + 20.0 * (double)(s / (size_t)per_row);
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"14\" fill=\"%s\"/>",
                lx, ly, PALETTE[s % 10]);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">", lx + 20, ly + 12);
        xml_text(f, S[s].name);
        fputs("</text>\n", f);
    }
    fputs("</g>\n", f);
    for (size_t s = 0; s < ns; s++) {
        const series *se = &S[s];
        double ox = PW * (double)(s % (size_t)cols), oy = HH + PH * (double)(s / (size_t)cols);
        double px = ox + ML, py = oy + MT, pw = PW - ML - MR, ph = PH - MT - MB;
        double ylo = INFINITY, yhi = -INFINITY, ystep;
        for (size_t i = 0; i < se->n; i++) {
            if (se->y[i] < ylo) ylo = se->y[i];
            if (se->y[i] > yhi) yhi = se->y[i];
        }
        nice_axis(&ylo, &yhi, &ystep);
        const char *col = PALETTE[s % 10];
        fputs("<g class=\"panel\">\n", f);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">", px, py - 10);
        xml_text(f, se->name);
        fputs("</text>\n", f);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                   "stroke=\"#888888\"/>\n",
                px, py, pw, ph);
        char lab[64];
        for (int k = 0;; k++) {
            double yv = ylo + k * ystep;
            if (yv > yhi + ystep * 1e-6 || k > 50)
                break;
            double yy = py + ph - (yv - ylo) / (yhi - ylo) * ph;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>",
                    px, yy, px + pw, yy, px - 5, yy, px, yy);
            fmt_tick(lab, sizeof lab, yv, ystep);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", px - 8,
                    yy + 4, lab);
        }
        for (int k = 0;; k++) {
            double xv = xlo + k * xstep;
            if (xv > xhi + xstep * 1e-6 || k > 50)
                break;
            double xx = px + (xv - xlo) / (xhi - xlo) * pw;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>",
                    xx, py + ph, xx, py + ph + 5);
            fmt_tick(lab, sizeof lab, xv, xstep);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", xx,
                    py + ph + 18, lab);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px + pw / 2,
                py + ph + 36);
        xml_text(f, xname);
        fputs("</text>\n", f);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                   "transform=\"rotate(-90 %.1f %.1f)\">",
                ox + 14, py + ph / 2, ox + 14, py + ph / 2);
        xml_text(f, se->name);
        fputs("</text>\n", f);
        fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                   "stroke-linejoin=\"round\" stroke-linecap=\"round\" d=\"",
                col);
        for (size_t i = 0; i < se->n; i++) {
            double xx = px + (se->x[i] - xlo) / (xhi - xlo) * pw;
            double yy = py + ph - (se->y[i] - ylo) / (yhi - ylo) * ph;
            fprintf(f, "%s%.2f %.2f", i == 0 ? "M" : " L", xx, yy);
            if (se->n == 1)
                fprintf(f, " L%.2f %.2f", xx, yy);
        }
        fputs("\"/>\n", f);
        if (se->n <= 40)
            for (size_t i = 0; i < se->n; i++) {
                double xx = px + (se->x[i] - xlo) / (xhi - xlo) * pw;
                double yy = py + ph - (se->y[i] - ylo) / (yhi - ylo) * ph;
                fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>", xx, yy,
                        col);
            }
        fputs("</g>\n", f);
    }
    fputs("</svg>\n", f);
}

