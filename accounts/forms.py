"""Forms of the staff admin's support actions (accounts/admin/actions.py, bulk.py)."""

from __future__ import annotations

from django import forms

from accounts.models import Tier


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        required=False,
        max_length=1000,
        help_text="Recorded in the audit trail with your user name.",
    )

    def __init__(self, *args, reason_required: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = reason_required


class TierForm(ReasonForm):
    tier = forms.ChoiceField(choices=Tier.choices, widget=forms.HiddenInput)


class ReissueKeyForm(ReasonForm):
    # The agent's working keys when the page was shown: a second submission (double
    # click, reload of the new-key page) finds them changed and does nothing, instead
    # of revoking the key just handed out.
    working_keys = forms.CharField(widget=forms.HiddenInput, required=False)

    def clean_working_keys(self) -> list[int]:
        """ "3,7" -> [3, 7]: what keys.services.api_key_reissue expects to find active."""
        value = self.cleaned_data["working_keys"]
        try:
            return [int(pk) for pk in value.split(",") if pk.strip()]
        except ValueError:
            raise forms.ValidationError("Not a list of key ids.") from None
