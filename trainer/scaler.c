#include "trainer/scaler.h"

void scaler_init(loss_scaler *s, float initial_scale, int growth_interval)
{
    *s = (loss_scaler){.scale = initial_scale, .growth_interval = growth_interval};
}

bool scaler_update(loss_scaler *s, bool finite)
{
    if (!finite) {
        s->overflows++;
        s->good_steps = 0;
        if (s->growth_interval > 0)   /* a fixed scale stays (scaler.h) */
            s->scale = s->scale * 0.5f > SCALER_MIN_SCALE ? s->scale * 0.5f : SCALER_MIN_SCALE;
        return false;
    }
    if (s->growth_interval > 0 && ++s->good_steps >= s->growth_interval) {
        s->good_steps = 0;
        s->scale *= 2.0f;
    }
    return true;
}

void scaler_restore(loss_scaler *s, double scale, int good_steps)
{
    s->scale = s->growth_interval > 0 && scale < SCALER_MIN_SCALE ? SCALER_MIN_SCALE : (float)scale;
    s->good_steps = good_steps;
}
